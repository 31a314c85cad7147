"""The USM Workflow Interchange Format (USM-WIF): each unit's workflows as JSON documents.

SURVUZ's draft (2021, "a proposal intended for discussion"; mikko-ahonen/usm-rfc,
workflow-format.md) describes a workflow as steps per USM process, each with activities and
RACI responsibilities per profile. ``usm-bridge export wif`` writes one document per workflow
pattern a unit runs (:mod:`.export`), ``usm-bridge import wif`` reads documents back and prints
the config that reproduces them (:mod:`.reader`, :mod:`.to_config`). The config section is
:mod:`.settings`; the JSON Schema, written from the draft, is ``schema/usm-workflow.schema.json``.

This package imports nothing of :mod:`usm_bridge.config` at import time: the config imports
:mod:`.settings`.
"""
