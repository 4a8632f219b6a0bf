"""raydq.cluster"""
