"""core/forms"""
