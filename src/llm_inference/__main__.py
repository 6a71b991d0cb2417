from llm_inference.cli import main

main()
