"""raydq.embed"""
