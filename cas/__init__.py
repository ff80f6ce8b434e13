"""cas: the content-addressed storage engine behind ninep (no 9P knowledge)."""
