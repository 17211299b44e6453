"""The Hugging Face Hub protocol under ``/hf`` (docs/hub-protocol.md).

``revisions`` maps Hub repos and revisions onto adapters and versions, ``read``
builds the answers of the read-side calls, ``errors`` holds the typed refusals the
stock client recognises by their ``X-Error-Code`` header.
"""
