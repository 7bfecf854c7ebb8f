using System.CommandLine;
using System.Text;

namespace ProxySelection.LabTool;

/// <summary>
/// The <c>proxysel-lab</c> command line: the lab tools beside the daemon (demo, interop, bench, simulate). They start
/// the daemon <c>proxysel</c> as processes; none of them ships in it.
/// </summary>
internal static class Cli
{
    public static RootCommand Build(TextWriter stderr)
    {
        var root = new RootCommand("proxysel-lab: the proxysel daemon in network namespaces on this machine (demo, interop, bench) and the chain simulator");
        root.Subcommands.Add(Lab.LabCommand.Build(stderr)); // demo
        root.Subcommands.Add(Interop.InteropCommand.Build(stderr));
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(SimulateCommand.Create());
        return root;
    }

    public static int Run(string[] args)
    {
        Lab.Prerequisites.CompletePath();
        using var stdout = Console.OpenStandardOutput();
        return Run(args, stdout, Console.Error);
    }

    /// <summary>Runs the command line against the given output streams (tests pass memory streams).</summary>
    public static int Run(string[] args, Stream stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        var result = Build(stderr).Parse(args);
        using var output = new StreamWriter(stdout, new UTF8Encoding(false), leaveOpen: true) { AutoFlush = true };
        if (result.Errors.Count > 0)
        {
            foreach (var error in result.Errors)
            {
                stderr.WriteLine(error.Message);
            }

            stderr.WriteLine("Run 'proxysel-lab --help' for usage.");
            return ExitCodes.Usage;
        }

        return result.Invoke(new InvocationConfiguration { Output = output, Error = stderr });
    }
}
