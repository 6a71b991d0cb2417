from llm_inference.cli import main

# The guard matters: vLLM starts its engine core in spawned processes, which re-import the main module.
if __name__ == "__main__":
    main()
