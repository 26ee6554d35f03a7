"""The series bible: characters, locations, references and identity embeddings."""
