"""The demo incidents API: data (:mod:`.data`), fault injection (:mod:`.faults`), request
handling (:mod:`.routes`) and the HTTP server that serves them (:mod:`.server`)."""
