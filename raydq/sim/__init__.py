"""raydq.sim"""
