"""The examples of examples/*.yaml written in Python with stratoflow.sdk (one module each).

``stratoflow validate examples/python/etl_chain.py`` checks one, ``stratoflow apply`` sends it;
tests/unit/test_sdk_examples.py proves each gives the same document as its YAML twin.
"""
