"""What graph_editor tells the layers above it, without importing them."""
from django.dispatch import Signal

# Sent inside the transaction that deletes a model (kwarg `model`), before the delete. A
# receiver refuses the delete by raising a PlatformError (the deployments layer raises
# Conflict while a version of the model is deployed); nothing has been removed then.
model_deleting = Signal()

# Sent inside the transaction that deletes a graph (kwarg `graph`), before the delete; a
# receiver refuses by raising a PlatformError (Conflict while a version is deployed).
graph_deleting = Signal()
