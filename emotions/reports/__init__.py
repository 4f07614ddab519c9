"""Set reports: built after each set from SQL aggregates, stored on SetReport, served as JSON,
rendered as a printable HTML page with charts, announced to organizers. See docs/reports.md.

selectors.py  reads (the payload, lists, the fan view)
services.py   writes (sweeper, claims, builds, rebuilds, publication, announcements)
charts.py     matplotlib PNG charts for the HTML page
"""
