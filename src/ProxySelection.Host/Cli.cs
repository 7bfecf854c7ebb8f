using System.CommandLine;

namespace ProxySelection.Host;

/// <summary>The <c>proxysel</c> command line: one verb per subcommand.</summary>
internal static class Cli
{
    public static RootCommand Build()
    {
        var root = new RootCommand("proxysel: Multipath TCP proxy selection for operator proxy chains");
        return root;
    }

    public static int Run(string[] args) => Build().Parse(args).Invoke();
}
