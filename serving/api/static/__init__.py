"""The review web page (HTML, CSS, JavaScript), served by `serving.api.routes.review`."""
