"""Experience APIs: process data reshaped for one audience each (portal, partner, finance)."""
