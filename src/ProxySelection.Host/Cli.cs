using System.CommandLine;
using System.Text;

namespace ProxySelection.Host;

/// <summary>The <c>proxysel</c> command line: one verb per subcommand.</summary>
internal static class Cli
{
    public static RootCommand Build(Stream stdout, TextWriter stderr)
    {
        var root = new RootCommand("proxysel: Multipath TCP proxy selection for operator proxy chains");
        root.Subcommands.Add(DecodeCommand.Build(stdout, stderr));
        root.Subcommands.Add(RunCommand.Build(stderr));
        root.Subcommands.Add(CleanupCommand.Build(stderr));
        root.Subcommands.Add(Control.ControlVerbs.BuildStatus(stderr));
        root.Subcommands.Add(Control.ControlVerbs.BuildCache(stderr));
        root.Subcommands.Add(Control.ControlVerbs.BuildReload(stderr));
        return root;
    }

    public static int Run(string[] args)
    {
        using var stdout = Console.OpenStandardOutput();
        return Run(args, stdout, Console.Error);
    }

    /// <summary>Runs the command line against the given output streams (tests pass memory streams).</summary>
    public static int Run(string[] args, Stream stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        var result = Build(stdout, stderr).Parse(args);
        using var output = new StreamWriter(stdout, new UTF8Encoding(false), leaveOpen: true) { AutoFlush = true };
        if (result.Errors.Count > 0)
        {
            foreach (var error in result.Errors)
            {
                stderr.WriteLine(error.Message);
            }

            stderr.WriteLine("Run 'proxysel --help' for usage.");
            return ExitCodes.Usage;
        }

        return result.Invoke(new InvocationConfiguration { Output = output, Error = stderr });
    }
}
