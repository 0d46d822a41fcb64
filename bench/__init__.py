"""How a model is measured, in the stages of the data flow (see the README's Layout section)."""

from segbench._rooms import require_namespace

require_namespace(__name__)
