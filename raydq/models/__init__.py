"""raydq.models"""
