"""`vaezoo explore`: a local web page to look at models side by side (needs the `explore` extra).

`server` loads the models and serves; `app` is the HTTP layer; `views` turns a model into the
pictures and codes the page shows; `static/` is the page itself.
"""
