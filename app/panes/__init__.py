"""The five screens of the flow: Model -> Fit -> Convert -> Evaluate -> Chat."""
