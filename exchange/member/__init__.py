"""The member side: what a member CERT runs against any exchange."""
