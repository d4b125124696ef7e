"""Delivery: one generated image → one delivered file, for live requests and campaigns alike.

`deliver` (the one path: score, manifest, watermark, encode, store, asset row; all files or
none), `compose` and `typeset` (a campaign's logo and texts on the background), `manifest`
(XMP provenance, reading a file's origin back), `watermark` (the invisible mark),
`credentials` (the signed C2PA manifest; `dev_certificate` for local use), `formats`
(encoders and their metadata slots), `vector` (SVG), `redact` (personal data out of stored
prompts and logs). No Ray, no HTTP.
"""
