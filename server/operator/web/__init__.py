"""The operator console: server-rendered pages (Jinja2), SVG charts drawn in Python, one small script.

No front-end build step and no third-party browser code: every byte a page loads is in this package
(docs/console.md says why).
"""
