using System.ComponentModel;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Lab;

/// <summary>Runs a short command to completion with captured output and a hard timeout (through
/// <see cref="ProcessCommandRunner.ExecuteAsync"/>, the one process runner of the project).</summary>
public static class LabCommand
{
    /// <summary>Default bound for one lab command (ip, tc, sysctl, iptables are all sub-second).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Runs <paramref name="file"/> with <paramref name="args"/>. A command still running after
    /// <paramref name="timeout"/> is killed (by its own pid and its descendants) and <see cref="LabException"/> is thrown.
    /// A non-zero exit is returned, not thrown: call <see cref="CommandResult.EnsureSuccess"/>.
    /// </summary>
    public static async Task<CommandResult> RunAsync(
        string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null,
        CancellationToken cancellationToken = default)
    {
        var argv = args.ToList();
        var text = Describe(file, argv);
        var limit = timeout ?? DefaultTimeout;
        try
        {
            var r = await ProcessCommandRunner.ExecuteAsync(file, argv, stdin, limit, cancellationToken).ConfigureAwait(false);
            return new CommandResult(text, r.ExitCode, r.StdOut, r.StdErr);
        }
        catch (Win32Exception e)
        {
            throw new LabException($"cannot start '{text}': {e.Message}", e);
        }
        catch (TimeoutException)
        {
            throw new LabException($"'{text}' did not finish within {limit}");
        }
    }

    /// <summary>Runs a command and throws <see cref="LabException"/> unless it exits 0; returns its stdout.</summary>
    public static async Task<string> CheckAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null,
        CancellationToken cancellationToken = default)
    {
        var r = await RunAsync(file, args, timeout, stdin, cancellationToken).ConfigureAwait(false);
        return r.EnsureSuccess().StdOut;
    }

    internal static string Describe(string file, IEnumerable<string> args) =>
        string.Join(' ', new[] { file }.Concat(args.Select(a => a.Contains(' ', StringComparison.Ordinal) ? $"'{a}'" : a)));
}
