print("srbench")
