"""The contracts: protocols, records, errors and the value codec. Standard library only."""
