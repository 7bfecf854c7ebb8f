namespace ProxySelection.Lab;

/// <summary>What a finished command printed and returned.</summary>
public sealed record CommandResult(string Command, int ExitCode, string StdOut, string StdErr)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>Returns this result, or throws <see cref="LabException"/> with the command and its stderr.</summary>
    public CommandResult EnsureSuccess() =>
        Succeeded ? this : throw new LabException($"'{Command}' exited {ExitCode}: {StdErr.Trim()} {StdOut.Trim()}".Trim());
}
