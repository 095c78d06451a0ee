"""The app's dialogs: Train (and its form, corpus picker and live view), Analyse, Explain, About."""
