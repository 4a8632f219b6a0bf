"""raydq.serve"""
