"""Reports for the people who own the data: one offline HTML file (or PDF) per request."""
