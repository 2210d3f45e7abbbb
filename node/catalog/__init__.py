"""The service catalog (办事指南): what each node handles, with what materials and time limits.

Public surface, for the cases and certificates domains and the local API:

* `Catalog`, `Item`, `Material`, `FormField`: the typed catalog (node.catalog.model);
  `catalog.item(code)`, `catalog.require(code)`, `item.certificate_types`,
  `catalog.certificate_types` (all types a node issues), `catalog.certificate_types_by_item()`.
* `load_catalog(session, node_id)`: inside a read or write transaction, the catalog of this node
  (its own) or of a peer (the cached copy), or None.
* `Catalogs` (node.catalog.service): the running node's import / fetch / refresh service;
  `CatalogComponent.catalogs` holds the node's instance.
* `parse_catalog(text, node_id=...)`, `CatalogError`: the TOML form.
"""

from __future__ import annotations

from node.catalog.model import Catalog, CatalogError, FormField, Item, Material, parse_catalog
from node.catalog.store import load_catalog

__all__ = ["Catalog", "CatalogError", "FormField", "Item", "Material", "load_catalog", "parse_catalog"]
