"""Experience API for partners: their own customers' billing, payments and usage."""
