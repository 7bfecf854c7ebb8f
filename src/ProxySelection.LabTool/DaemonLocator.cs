using System.CommandLine;
using System.Reflection;
using System.Runtime.InteropServices;
using ProxySelection.LabTool.Interop;

namespace ProxySelection.LabTool;

/// <summary>
/// Where the daemon <c>proxysel</c> is: the lab verbs start it as processes in namespaces and have no code reference to
/// it. In order: <c>--proxysel PATH</c>; <c>$PROXYSEL_DAEMON</c>; <c>proxysel.dll</c> or <c>proxysel</c> beside this
/// tool; the Host project's build output of this tool's configuration in the repository this tool was built in (or run
/// from); <c>proxysel</c> on PATH.
/// </summary>
internal static class DaemonLocator
{
    public const string EnvironmentVariable = "PROXYSEL_DAEMON";

    /// <summary>The Host project's target framework: its build output folder.</summary>
    private const string TargetFramework = "net10.0";

    public static Option<string?> CreateOption() => new("--proxysel")
    {
        Description = $"The proxysel daemon to start (apphost or proxysel.dll). Default: ${EnvironmentVariable}, then proxysel beside this tool, then src/ProxySelection.Host/bin/<configuration>/{TargetFramework}/proxysel.dll of this repository, then proxysel on PATH",
    };

    /// <summary>
    /// The daemon's path, or null with <paramref name="problem"/> saying what was looked at. A path named by the option
    /// or the variable is the only one tried: a mistyped path must not silently run another build.
    /// </summary>
    public static string? Find(string? option, string? environment, IReadOnlyList<string> startDirectories, string configuration,
        IEnumerable<string> searchPath, Func<string, bool> exists, out string problem)
    {
        ArgumentNullException.ThrowIfNull(startDirectories);
        ArgumentNullException.ThrowIfNull(searchPath);
        ArgumentNullException.ThrowIfNull(exists);
        foreach (var (value, name) in new[] { (option, "--proxysel"), (environment, EnvironmentVariable) })
        {
            if (!string.IsNullOrEmpty(value))
            {
                problem = $"{name} names {value}, which does not exist";
                return exists(value) ? Path.GetFullPath(value) : null;
            }
        }

        var candidates = new List<string>();
        if (startDirectories.Count > 0)
        {
            candidates.Add(Path.Combine(startDirectories[0], "proxysel.dll"));
            // An apphost beside us without its dll but with its runtimeconfig is the stub the SDK copies for the
            // build-order reference, not a daemon; a single-file build has neither.
            if (!exists(Path.Combine(startDirectories[0], "proxysel.runtimeconfig.json")))
            {
                candidates.Add(Path.Combine(startDirectories[0], "proxysel"));
            }
        }

        foreach (var start in startDirectories)
        {
            if (RepositoryRoot(start, exists) is { } root)
            {
                candidates.Add(Path.Combine(root, "src", "ProxySelection.Host", "bin", configuration, TargetFramework, "proxysel.dll"));
            }
        }

        candidates.AddRange(searchPath.Select(d => Path.Combine(d, "proxysel")));
        problem = $"no proxysel daemon found (looked at --proxysel, ${EnvironmentVariable}, beside this tool, src/ProxySelection.Host/bin/{configuration}/{TargetFramework} of this repository and PATH): build it with `dotnet build src/ProxySelection.Host -c {configuration}` or name it with --proxysel PATH";
        return candidates.FirstOrDefault(exists) is { } found ? Path.GetFullPath(found) : null;
    }

    /// <summary>The nearest directory at or above <paramref name="start"/> holding ProxySelection.sln.</summary>
    public static string? RepositoryRoot(string start, Func<string, bool> exists)
    {
        ArgumentNullException.ThrowIfNull(exists);
        for (var directory = Path.GetFullPath(start); directory is not null; directory = Path.GetDirectoryName(directory))
        {
            if (exists(Path.Combine(directory, "ProxySelection.sln")))
            {
                return directory;
            }
        }

        return null;
    }

    /// <summary>
    /// The daemon on this machine as a command (a <c>.dll</c> under the dotnet host that runs this tool, so sudo's PATH
    /// without dotnet does not matter), or null after one line on <paramref name="stderr"/>.
    /// </summary>
    public static ProxyBinary? Resolve(string? option, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        var found = Find(option, Environment.GetEnvironmentVariable(EnvironmentVariable), [AppContext.BaseDirectory, Environment.CurrentDirectory],
            Configuration, (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries), File.Exists,
            out var problem);
        if (found is null)
        {
            stderr.WriteLine($"proxysel-lab: {problem}");
            return null;
        }

        return found.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)
            ? new ProxyBinary(DotnetHost(), [found], "current")
            : new ProxyBinary(found, [], "current");
    }

    /// <summary>The default daemon (no <c>--proxysel</c>), or an exception with the one-line reason.</summary>
    public static ProxyBinary Default()
    {
        using var problem = new StringWriter();
        return Resolve(null, problem) ?? throw new InvalidOperationException(problem.ToString().Trim());
    }

    /// <summary>The configuration this tool was built in (Debug, Release): the daemon of the same one is looked for.</summary>
    private static string Configuration =>
        typeof(DaemonLocator).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration is { Length: > 0 } c ? c : "Release";

    /// <summary>The dotnet host: this process when it is one, else the one beside the runtime this tool runs on.</summary>
    private static string DotnetHost()
    {
        if (Environment.ProcessPath is { } process && Path.GetFileNameWithoutExtension(process) == "dotnet")
        {
            return process;
        }

        // <root>/shared/Microsoft.NETCore.App/<version>/ -> <root>/dotnet
        var host = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", "dotnet"));
        return File.Exists(host) ? host : "dotnet";
    }
}
