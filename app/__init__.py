"""The dashboard's Streamlit code: `pages/` holds the page files st.navigation runs (UI only),
`ui.py` the shared widgets and cached loaders, `evidence.py` and `matrix_view.py` page parts,
`session_expiry.py` the one fix that reaches into Streamlit's internals. Everything here calls
`detector/`; nothing in `detector/` imports this package."""
