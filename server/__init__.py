"""The HTTP agent endpoint: the Agent Protocol routes of LangGraph's own server (threads, streamed
runs, state, history) over the two graphs, with persistence, API keys and a chat page.

    presales serve --run RUN [--db sqlite-file|postgresql://...] [--api-key KEY ...]

It sits above agent/ (like eval/): nothing below imports it.
"""
