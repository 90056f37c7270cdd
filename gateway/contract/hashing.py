"""API keys are stored and looked up by their SHA-256; the secret itself is never kept."""
import hashlib


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()
