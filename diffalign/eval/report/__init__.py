"""Reports for evaluation jobs: a self-contained HTML page and a Markdown summary
(:class:`Report`, :class:`GalleryItem`), and matplotlib bar charts (:func:`bar_chart`)."""
from diffalign.eval.report.charts import bar_chart
from diffalign.eval.report.document import GalleryItem, Report, image_data_uri

__all__ = ["GalleryItem", "Report", "bar_chart", "image_data_uri"]
