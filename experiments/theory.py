"""Placeholder until classifier_edit lands."""
def run(study):
    return ""
