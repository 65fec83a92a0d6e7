"""Verification: does the model still know what it was asked to forget, and what else broke?"""
