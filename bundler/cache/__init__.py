"""The Hugging Face hub cache: its layout and how it is written (``layout``), read (``scan``), kept honest
(``listings``: the trees rule), cleaned (``leftovers``) and made durable (``durable``), and the guarded blob
write (``blobwrite``). See ``docs/ARCHITECTURE.md``."""
