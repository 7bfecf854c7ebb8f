using System.Diagnostics;

namespace ProxySelection.Interception.Rules;

/// <summary>What a finished command returned.</summary>
public sealed record CommandOutcome(int ExitCode, string StdOut, string StdErr)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>Runs the tools the ruleset needs (iptables-restore, iptables-save, ip, nft).</summary>
public interface ICommandRunner
{
    Task<CommandOutcome> RunAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken);
}

/// <summary>
/// Runs commands as child processes, optionally inside a named network namespace (<c>ip netns exec</c>), each bounded
/// by a timeout after which the child (and only it, by its pid) is killed.
/// </summary>
public sealed class ProcessCommandRunner : ICommandRunner
{
    private readonly string? networkNamespace;
    private readonly TimeSpan timeout;

    public ProcessCommandRunner(string? networkNamespace = null, TimeSpan? timeout = null)
    {
        this.networkNamespace = networkNamespace;
        this.timeout = timeout ?? TimeSpan.FromSeconds(20);
    }

    public async Task<CommandOutcome> RunAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        IEnumerable<string> argv = networkNamespace is null ? args : ["netns", "exec", networkNamespace, file, .. args];
        try
        {
            return await ExecuteAsync(networkNamespace is null ? file : "ip", argv, stdin, timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            // As a shell reports it: the tool is not installed.
            return new CommandOutcome(127, "", $"{file}: {e.Message}");
        }
        catch (TimeoutException)
        {
            throw new InterceptionRulesException($"{file} {string.Join(' ', args)} did not finish within {timeout}");
        }
    }

    /// <summary>
    /// Runs <paramref name="file"/> to completion with captured stdout/stderr and optional stdin. A child still running
    /// after <paramref name="timeout"/> is killed (by its own pid, with its descendants) and <see cref="TimeoutException"/>
    /// is thrown; one that cannot start throws <see cref="System.ComponentModel.Win32Exception"/>; cancellation kills
    /// it too and throws <see cref="OperationCanceledException"/>. A non-zero exit is returned, not thrown.
    /// </summary>
    public static async Task<CommandOutcome> ExecuteAsync(string file, IEnumerable<string> args, string? stdin, TimeSpan timeout,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var process = new Process { StartInfo = psi };
        process.Start();
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin).ConfigureAwait(false);
            process.StandardInput.Close();
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            KillQuietly(process);
            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException($"{file} did not finish within {timeout}");
        }

        return new CommandOutcome(process.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }

    private static void KillQuietly(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(2000);
        }
        catch (InvalidOperationException)
        {
            // Exited between the timeout and the kill.
        }
    }
}

/// <summary>The ruleset could not be applied or removed (a tool failed; the message carries its output).</summary>
public sealed class InterceptionRulesException : Exception
{
    public InterceptionRulesException() { }

    public InterceptionRulesException(string message) : base(message) { }

    public InterceptionRulesException(string message, Exception inner) : base(message, inner) { }
}
