"""Procedure video: probe, sample, judge and embed frames, pick documentation stills.

A recorded procedure becomes evidence for the documentation checklist: the stills that best
show each required landmark (marked for review), a per-frame quality and landmark table, and
segment vectors for "similar moments" search. Imports flow one way: app.video uses
app.services and app.documentation, never the reverse.
"""
