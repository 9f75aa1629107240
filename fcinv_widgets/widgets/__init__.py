"""Jupyter widgets (anywidget): synced views + user-facing classes taking library objects."""

from .fc_explorer import FCExplorer, FCExplorerView, SliderDomainError

__all__ = ["FCExplorer", "FCExplorerView", "SliderDomainError"]
