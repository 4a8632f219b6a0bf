"""raydq.labels"""
