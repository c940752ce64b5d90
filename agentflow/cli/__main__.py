from agentflow.cli.main import main

main()
