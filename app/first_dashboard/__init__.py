"""The FIRST dashboard (``streamlit run app/main.py``): run discovery, cached data, views.

Figures come from :mod:`first_eval.plots`, the same builders the report uses.
"""
