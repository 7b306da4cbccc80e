"""The document templates by name (rendered by `geosid.embedding.documents`): importing
this module imports no engine, so DAG files can list the templates."""

TEMPLATE_CONTENT = "content-v1"
TEMPLATE_V1 = "geo-doc-v1"
TEMPLATE_V2 = "geo-doc-v2"
TEMPLATES = (TEMPLATE_CONTENT, TEMPLATE_V1, TEMPLATE_V2)
# The text part of each template (what the text encoder reads) and whether its vector
# carries the item's exact location.
TEXT_TEMPLATE = {TEMPLATE_CONTENT: TEMPLATE_CONTENT, TEMPLATE_V1: TEMPLATE_V1, TEMPLATE_V2: TEMPLATE_V1}
WITH_LOCATION = {TEMPLATE_CONTENT: False, TEMPLATE_V1: False, TEMPLATE_V2: True}
