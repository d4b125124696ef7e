"""Erasure of a data subject's personal data (GDPR Art. 17; DESIGN.md, decision 9).

`subjects`: the subjects a text mentions (what `serving.delivery.redact` finds), normalised,
as keyed hashes recorded in `subject_refs` beside each stored object that mentioned one before
redaction. `erasure`: find every stored object of a subject (by its hash, and by the subject in
clear where a text kept it), then delete files and rows or scrub fields, with one audit row.
"""
