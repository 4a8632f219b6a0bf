"""raydq.head"""
