"""Research projects: applications, their review, and (later) the extracts provisioned for them."""
