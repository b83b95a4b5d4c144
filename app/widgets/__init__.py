"""Reusable widgets: charts drawn with QPainter (PySide6-Essentials has no QtCharts), banners, badges."""
