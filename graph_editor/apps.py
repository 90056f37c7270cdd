from django.apps import AppConfig


class GraphEditorConfig(AppConfig):
    name = "graph_editor"
